"""Accelerator emulator: cycle counts, memory, bit-exact fixed point, approach to float, CLI."""

from fractions import Fraction
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.accel import design as dm
from rbtw.accel import datapath, fixed, schedule
from rbtw.accel.engine import AccelEngine
from randmodel import random_export
from rbtw.cli import main
from rbtw.errors import UserError
from rbtw.export_format import write_export
from rbtw.infer import PackedEngine
from rbtw.kernels import unpack

SETTINGS = settings(deadline=None, max_examples=25)
MANY = settings(deadline=None, max_examples=150)


def _mats(draw_shapes, one_hot_first):
    out = []
    for k, (G, K) in enumerate(draw_shapes):
        H = G // 4
        out.append(schedule.Matrix(f"rnn{k}.W_h", G, H, H, G * H))
        oh = one_hot_first and k == 0
        out.append(schedule.Matrix(f"rnn{k}.W_x", G, K, 1 if oh else K, G * K))
    return out


shapes = st.lists(st.tuples(st.integers(1, 40).map(lambda h: 4 * h), st.integers(1, 70)), min_size=1, max_size=3)


@MANY
@given(shapes=shapes, one_hot=st.booleans(), R=st.integers(1, 40), C=st.integers(1, 40),
       sram_kb=st.sampled_from([0, 0.05, 0.3, 1, 4, 64]), width=st.one_of(st.none(), st.integers(1, 3000)),
       kind=st.sampled_from(dm.PRESETS[:3]), gbps=st.floats(0.1, 50))
def test_closed_form_equals_the_tile_loop(shapes, one_hot, R, C, sram_kb, width, kind, gbps):
    d = dm.preset(kind, rows=R, cols=C, sram_kb=sram_kb, dram_gbps=gbps).with_(sram_width=width)
    mats = _mats(shapes, one_hot)
    hidden = [G // 4 for G, _ in shapes]
    assert schedule.closed_form(mats, hidden, d) == schedule.simulate(mats, hidden, d)


@MANY
@given(shapes=shapes, one_hot=st.booleans(), R=st.integers(1, 30), C=st.integers(1, 30),
       dR=st.integers(0, 10), dC=st.integers(0, 10), sram_kb=st.sampled_from([0, 0.3, 2, 64]),
       kind=st.sampled_from(dm.PRESETS[:3]), width=st.one_of(st.none(), st.integers(1, 600)))
def test_cycles_never_increase_when_pes_are_added(shapes, one_hot, R, C, dR, dC, sram_kb, kind, width):
    mats = _mats(shapes, one_hot)
    hidden = [G // 4 for G, _ in shapes]
    small = dm.preset(kind, rows=R, cols=C, sram_kb=sram_kb).with_(sram_width=width)
    big = dm.preset(kind, rows=R + dR, cols=C + dC, sram_kb=sram_kb).with_(sram_width=width)
    fill = math.ceil(math.log2(C + dC)) - math.ceil(math.log2(C))   # a deeper adder tree is latency
    assert schedule.closed_form(mats, hidden, big) <= schedule.closed_form(mats, hidden, small) + fill * len(shapes)
    if dC == 0:
        assert schedule.closed_form(mats, hidden, big) <= schedule.closed_form(mats, hidden, small)


def test_narrow_sram_is_a_stream_not_a_per_tile_stall():
    # ternary, one layer H = 64 (G = 256), W_h 256×64 and a one-hot W_x, 64-bit SRAM port:
    # 256·64·2 + 256·2 bits on chip = 33,280 bits = 520 port cycles, whatever the array
    mats = _mats([(256, 50)], one_hot_first=True)
    for R, C in ((1, 32), (1, 48), (2, 32), (3, 48)):
        d = dm.preset("ternary", rows=R, cols=C).with_(sram_width=64)
        tiles = -(-256 // R) * -(-64 // C) + -(-256 // R)
        want = max(tiles, 520) + math.ceil(math.log2(C)) + dm.FIXED_STAGES + 16 + dm.PP_LATENCY
        assert schedule.simulate(mats, [64], d) == want
    one, more = (dm.preset("ternary", rows=1, cols=C).with_(sram_width=64) for C in (32, 48))
    assert schedule.closed_form(mats, [64], more) <= schedule.closed_form(mats, [64], one) + 1


def test_matched_array_closed_form_by_hand():
    # H = 8, G = 32, one-hot W_x: 2×2 tiles... R=16, C=8: W_h 2×1 tiles, W_x 2 column reads
    mats = _mats([(32, 20)], one_hot_first=True)
    d = dm.preset("binary", rows=16, cols=8)
    assert schedule.simulate(mats, [8], d) == 2 + 2 + (3 + dm.FIXED_STAGES) + (2 + dm.PP_LATENCY)


@SETTINGS
@given(H=st.integers(2, 24), layers=st.integers(1, 2), quant=st.sampled_from(["binary", "ternary", "none"]),
       kind=st.sampled_from(["char", "word", "classify"]), seed=st.integers(0, 2 ** 16))
def test_weight_memory_is_weights_times_bits(H, layers, quant, kind, seed):
    ex = random_export(np.random.default_rng(seed), hidden=H, layers=layers, quant=quant, kind=kind, n_in=7)
    gx = random_export(np.random.default_rng(seed), hidden=H, layers=layers, quant=quant, kind=kind, n_in=7,
                       cell="gru")
    names = ["fp12"] + ([quant, f"{quant}-eq"] if quant != "none" else [])
    n_weights = sum(4 * H * (H + (H if k else (6 if kind == "word" else 7))) for k in range(layers))
    rows = ex.arrays["rnn0.scale_h"].shape[0]
    for name in names:
        d = dm.preset(name)
        c = schedule.costs(ex, d)
        assert c["weight_bits"] == n_weights * d.weight_bits          # α is folded into the scales
        # per row: s_h, s_x (4H each), s_c (H) scales; k (4H), k_c (H) shifts
        assert c["table_bits"] == layers * rows * (9 * H * d.scale_bits + 5 * H * d.pp_bits)
        g = schedule.costs(gx, d)
        assert g["weight_bits"] == n_weights * 3 // 4 * d.weight_bits
        assert g["table_bits"] == layers * rows * 6 * H * (d.scale_bits + d.pp_bits)
    if quant == "binary":
        assert schedule.costs(ex, dm.preset("fp12"))["weight_bits"] == 12 * schedule.costs(ex, dm.preset("binary"))["weight_bits"]


def _inputs(rng, kind, T, B, n_in=12):
    if kind == "classify":
        return rng.random((T, B, n_in)).astype(np.float32)
    return rng.integers(0, n_in, size=(T, B))


@SETTINGS
@given(H=st.integers(1, 20), layers=st.integers(1, 2), quant=st.sampled_from(["binary", "ternary", "none"]),
       kind=st.sampled_from(["char", "word", "classify"]), R=st.integers(1, 20), C=st.integers(1, 20),
       frac=st.integers(4, 14), seed=st.integers(0, 2 ** 16), T=st.integers(1, 12), bn=st.booleans(),
       cell=st.sampled_from(["lstm", "gru"]))
def test_emulator_equals_numpy_reference_exactly(H, layers, quant, kind, R, C, frac, seed, T, bn, cell):
    rng = np.random.default_rng(seed)
    ex = random_export(rng, hidden=H, layers=layers, quant=quant, kind=kind, bn=bn, cell=cell)
    for name in (["fp12"] if quant == "none" else ["fp12", "ternary"] + (["binary"] if quant == "binary" else [])):
        d = dm.preset(name, rows=R, cols=C, act_frac=frac, act_bits=frac + 4, cell_frac=frac)
        x = _inputs(rng, kind, T, 3)
        a, fa = AccelEngine(ex, d).forward_fixed(x, t0=2)
        b, fb = AccelEngine(ex, d, reference=True).forward_fixed(x, t0=2)
        t, _ = AccelEngine(ex, d, tiled=True).forward_fixed(x, t0=2)
        assert np.array_equal(a, b) and np.array_equal(t, b)
        for (ha, ca), (hb, cb) in zip(fa, fb):
            assert np.array_equal(ha, hb) and np.array_equal(ca, cb)


@pytest.mark.parametrize("quant,kind,cell", [("binary", "char", "lstm"), ("ternary", "word", "lstm"),
                                             ("none", "classify", "lstm"), ("ternary", "char", "gru")])
def test_outputs_approach_the_float_engine_as_fraction_bits_grow(quant, kind, cell):
    rng = np.random.default_rng(3)
    ex = random_export(rng, hidden=24, layers=2, quant=quant, kind=kind, cell=cell)
    x = _inputs(rng, kind, 15, 4)
    ref, _ = PackedEngine(ex).forward(x)
    errors = []
    for frac, seg in ((6, 1), (9, 3), (12, 5), (16, 7)):
        d = dm.preset("fp12" if quant == "none" else quant, act_frac=frac, act_bits=frac + 4, cell_frac=frac,
                      pp_frac=frac + 2, pp_bits=frac + 14, scale_frac=frac + 6, scale_bits=frac + 14,
                      seg_frac=seg, sig_range=4, tanh_range=3)
        out, _ = AccelEngine(ex, d).forward(x)
        errors.append(float(np.abs(out - ref).max()))
    assert errors[-1] < 2e-4 * max(1.0, float(np.abs(ref).max()))
    assert errors[-1] < errors[0] / 20


def test_fixed_quantize_rounds_half_up_and_saturates():
    assert fixed.quantize([0.5 / 4, -0.5 / 4, 100, -100], 8, 2).tolist() == [1, 0, 127, -128]


def test_mismatched_designs_are_user_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="ternary"):
        AccelEngine(random_export(rng, quant="ternary"), dm.preset("binary"))
    with pytest.raises(UserError, match="fp12"):
        AccelEngine(random_export(rng, quant="none"), dm.preset("ternary"))
    with pytest.raises(UserError, match="overflow"):
        AccelEngine(random_export(rng, quant="binary", hidden=64), dm.preset("binary", acc_bits=12))


def test_equal_area_design_has_the_fp12_array_area():
    fp, eq = dm.preset("fp12", rows=8, cols=8), dm.preset("binary-eq", rows=8, cols=8)
    assert eq.cols == 8 and eq.rows > 8
    assert eq.pes * eq.pe_area() <= fp.pes * fp.pe_area() < (eq.pes + eq.cols) * eq.pe_area()


@pytest.fixture(scope="module")
def export_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("accel") / "m.rbtw"
    ex = random_export(np.random.default_rng(1), hidden=16, quant="binary", kind="char", n_in=4)
    ex.manifest["vocab"] = list("abc ")
    write_export(path, ex)
    text = path.parent / "t.txt"
    text.write_text("abc cab " * 100, encoding="utf-8")
    return path, text


def test_cli_emulate_and_compare(export_file):
    path, text = export_file
    r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), "--rows", "8", "--cols", "4"])
    assert r.exit_code == 0, r.output
    assert "cycles/step" in r.output and "test bpc: fixed point" in r.output
    r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), "--compare", "--steps", "100"])
    assert r.exit_code == 0, r.output
    assert "| binary-eq |" in r.output and "= 12.0×" in r.output


@pytest.mark.parametrize("frac", [1, 12, 20])
def test_cli_emulate_runs_at_every_end_of_act_frac(export_file, frac):
    """Each value --act-frac admits gives a valid design (the cell register widens with it)."""
    path, text = export_file
    r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), "--act-frac", str(frac),
                                  "--steps", "40"])
    assert r.exit_code == 0, r.output
    assert "cycles/step" in r.output


@pytest.mark.parametrize("args,message", [
    (["--rows", "0"], "--rows"),
    (["--design", "ternary-eq"], None),
    (["--text", "BAD"], "characters not in the model's vocabulary"),
])
def test_cli_emulate_bad_input_is_one_line(export_file, args, message, tmp_path):
    path, text = export_file
    if message is None:
        r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), *args])
        assert r.exit_code == 0, r.output            # binary weights run on ternary PEs
        return
    if args[0] == "--text":
        bad = tmp_path / "bad.txt"
        bad.write_text("xyz", encoding="utf-8")
        args = ["--text", str(bad)]
    else:
        args = args + ["--text", str(text)]
    r = CliRunner().invoke(main, ["emulate", str(path), *args])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("error:")


def _emulate_compare(tmp_path, ex):
    """`rbtw emulate EXPORT --text T --compare` on a 3-symbol char export; the CliRunner result."""
    path = tmp_path / "m.rbtw"
    ex.manifest["vocab"] = list("ab ")
    write_export(path, ex)
    text = tmp_path / "t.txt"
    text.write_text("ab ba " * 50, encoding="utf-8")
    return CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), "--compare"])


def test_cli_emulate_runs_a_gru(tmp_path):
    r = _emulate_compare(tmp_path, random_export(np.random.default_rng(2), cell="gru", quant="ternary", n_in=3))
    assert r.exit_code == 0, r.output
    assert "| ternary-eq |" in r.output


def test_threaded_rows_of_a_large_matrix_equal_the_reference():
    ex = random_export(np.random.default_rng(5), hidden=512, quant="ternary", kind="classify", n_in=8, t_max=2)
    d = dm.preset("ternary")
    x = np.random.default_rng(6).random((3, 1, 8)).astype(np.float32)
    a, _ = AccelEngine(ex, d).forward_fixed(x)
    b, _ = AccelEngine(ex, d, reference=True).forward_fixed(x)
    assert np.array_equal(a, b)


@SETTINGS
@given(H=st.integers(1, 70), quant=st.sampled_from(["binary", "ternary"]), frac=st.integers(4, 20),
       kind=st.sampled_from(["word", "classify"]), cell=st.sampled_from(["lstm", "gru"]), seed=st.integers(0, 2 ** 16))
def test_packed_products_equal_the_integer_loop(H, quant, frac, kind, cell, seed):
    """The float32 accumulate-only products (h split into high and low bytes) give the integer
    loop's results exactly, from any state in the activation range."""
    rng = np.random.default_rng(seed)
    ex = random_export(rng, hidden=H, layers=2, quant=quant, kind=kind, cell=cell)
    d = dm.preset(quant, act_frac=frac, act_bits=frac + 4, cell_frac=frac, cell_bits=frac + 6)
    engine = AccelEngine(ex, d)
    x = engine._inputs(_inputs(rng, kind, 5, 2))
    lim = 1 << (d.act_bits - 1)
    for layer in engine.layers:
        assert layer.pm_h is not None and datapath.exact_split(layer.H, d.act_bits)
        state = (rng.integers(-lim, lim, size=(2, layer.H)), np.broadcast_to(layer.c0, (2, layer.H)).copy())
        fast = datapath.emulate_layer(layer, d, x, state, packed=True)
        slow = datapath.emulate_layer(layer, d, x, state, packed=False)
        for a, b in zip(fast, slow):
            assert np.array_equal(a, b)
        x = slow[0]


def test_exact_split_bounds_float32_sums():
    # 16-bit activations: hi in [-128, 127], lo in [0, 255]; sums below 2^24 up to K = 65,793
    assert datapath.exact_split(65_793, 16) and not datapath.exact_split(65_794, 16)
    # 24-bit activations: hi up to 2^15, so K < 512
    assert datapath.exact_split(511, 24) and not datapath.exact_split(512, 24)


def test_cli_default_design_follows_the_export(tmp_path):
    r = _emulate_compare(tmp_path, random_export(np.random.default_rng(7), hidden=8, quant="ternary", kind="char",
                                                 n_in=3))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("design ternary:") and "| ternary-eq |" in r.output and "| binary |" not in r.output


@pytest.mark.parametrize("cell,kind", [("lstm", "char"), ("gru", "word"), ("lstm", "classify")])
def test_random_exports_exercise_the_recurrence(cell, kind):
    # the BN variances include α², so the folded terms s_h ⊙ (Q_h h) and s_x ⊙ (Q_x x) have the
    # size γ of a trained model's normalised pre-activations, not γ·α (30–60× smaller)
    rng = np.random.default_rng(11)
    H, n_in = 32, 12
    ex = random_export(rng, hidden=H, layers=2, quant="binary", kind=kind, cell=cell, n_in=n_in)
    for k in range(2):
        Qh = ex.matrix(f"rnn{k}.W_h")
        Qx = ex.matrix(f"rnn{k}.W_x")
        h = rng.uniform(-1, 1, size=(200, H))
        K = Qx.cols
        x = np.eye(K)[rng.integers(0, K, 200)] if (k == 0 and kind != "classify") else rng.uniform(-1, 1, (200, K))
        rec = ex.arrays[f"rnn{k}.scale_h"][0] * (h @ unpack(Qh).T)          # (200, G)
        inp = ex.arrays[f"rnn{k}.scale_x"][0] * (x @ unpack(Qx).T)
        gamma_size = 0.1                                                    # γ ~ U(0.1, 0.3)
        assert np.median(rec.std(axis=0)) > 0.5 * gamma_size
        assert np.median(inp.std(axis=0)) > 0.2 * gamma_size


# --- every numeric design field is a finite number in its domain ------------------------------

_FIGURES_EXPORT = random_export(np.random.default_rng(12), hidden=8, layers=2, quant="binary", kind="char", n_in=4)
_ODD_VALUES = [math.nan, math.inf, -math.inf, 0, -1, -0.5, 1e-300, 5e-324, 1e308, 10 ** 400, 2 ** 63, True, "16", None]
_drawn_values = st.one_of(st.sampled_from(_ODD_VALUES), st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-2 ** 70, 2 ** 70))


def _finite_figures(value):
    if isinstance(value, dict):
        return all(_finite_figures(v) for v in value.values())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isfinite(value)
    return True


@MANY
@given(field=st.sampled_from(sorted(dm.DOMAINS)), value=_drawn_values, pe=st.sampled_from(dm.PE_KINDS))
def test_a_design_with_any_number_is_valid_or_one_line_naming_the_field(field, value, pe):
    """Any Design with one numeric field set to a drawn value (nan, ±inf, negative, huge, not a
    number) either is valid, and every figure reported of it is finite, or raises a one-line
    UserError naming the field."""
    base = dict(name="d", pe=pe, weight_bits={"fp": 12, "binary": 1, "ternary": 2}[pe])
    try:
        d = dm.Design(**dict(base, **{field: value}))
    except UserError as e:
        message = str(e)
        assert "\n" not in message and message.startswith("design d: "), message
        # a field of its own domain is named; a value valid alone may break a rule between fields
        if not _valid_alone(field, value):
            assert field in message, message
        return
    assert _valid_alone(field, value)
    figures = schedule.costs(_FIGURES_EXPORT, d)
    assert _finite_figures(figures), figures
    from rbtw.accel import report
    text = "\n".join(report.design_lines(_FIGURES_EXPORT, d) + report.table([figures]))
    assert not re.search(r"\b(inf|nan)\b", text, re.I), text


def _valid_alone(field, value):
    kind, lo, hi, _ = dm.DOMAINS[field]
    if value is None:
        return field in dm.OPTIONAL
    if isinstance(value, bool) or not isinstance(value, int if kind == "whole" else (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and lo <= value <= hi
    except OverflowError:
        return False


def test_emulation_runs_the_whole_split_unless_told_otherwise(export_file):
    """0 (what `rbtw emulate` passes without --steps): the whole split, whatever the run's cap;
    None: the run's cap; n: n minibatches (rbtw.evaluate.batch_limit)."""
    from dataclasses import replace
    from rbtw.accel import report
    from rbtw.config import TrainConfig
    from rbtw.export_format import read_export
    from rbtw.tasks import count_batches, fit_to_given, given_text
    path, text = export_file
    export = read_export(path)
    ids = [export.manifest["vocab"].index(c) for c in text.read_text(encoding="utf-8")]
    config = fit_to_given(TrainConfig.from_dict(export.manifest["config"]), len(ids))
    config = replace(config, seq_len=10, eval_batch=4, eval_max_batches=1)
    data = given_text(ids, export.manifest["vocab"])
    whole = count_batches(data, "test", config, config.eval_batch or config.batch)
    assert whole > 2
    for max_batches, want in ((0, whole), (None, 1), (2, 2)):
        totals = []
        report.emulation(export, dm.preset("binary"), data, config, max_batches=max_batches,
                         progress=lambda label, total: totals.append(total))
        assert totals == [want], (max_batches, totals)


def test_emulate_runs_a_text_shorter_than_a_sequence_whole(export_file, tmp_path):
    path, _ = export_file
    short = tmp_path / "short.txt"
    short.write_text("abc ca", encoding="utf-8")          # 6 symbols, T of the export is longer
    r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(short)])
    assert r.exit_code == 0, r.output
    assert "test bpc: fixed point" in r.output


@pytest.mark.parametrize("option,value,says", [("--clock-mhz", "inf", "'--clock-mhz'"),
                                               ("--sram-kb", "nan", "sram_kb must be a finite number"),
                                               ("--dram-gbps", "inf", "'--dram-gbps'"), ("--sram-kb", "inf", "'--sram-kb'"),
                                               ("--clock-mhz", "1e-30", "'--clock-mhz'"),
                                               ("--rows", str(2 ** 24 + 1), "'--rows'")])
def test_cli_emulate_refuses_design_figures_outside_their_domain_by_name(export_file, option, value, says):
    path, text = export_file
    r = CliRunner().invoke(main, ["emulate", str(path), "--text", str(text), option, value])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error:"), r.output
    assert says in r.output and "steps/s" not in r.output


def test_emulate_help_shows_the_domains_it_enforces():
    r = CliRunner().invoke(main, ["emulate", "--help"])
    for field, option in (("rows", "--rows"), ("clock_mhz", "--clock-mhz"), ("dram_gbps", "--dram-gbps")):
        kind, lo, hi, _ = dm.DOMAINS[field]
        shown = f"{lo}<=x<={hi}" if kind == "whole" else f"{float(lo)}<=x<={float(hi)}"
        assert shown in r.output, (option, shown)


def test_a_dram_slower_than_one_bit_per_cycle_is_not_rounded_up():
    # one layer H 16 (G 64), W_h and W_x 64×16, ternary: 2·64·16·2 = 4,096 bits, all off chip
    mats = [schedule.Matrix("rnn0.W_h", 64, 16, 16, 64 * 16), schedule.Matrix("rnn0.W_x", 64, 16, 16, 64 * 16)]
    design = {g: dm.preset("ternary", sram_kb=0, clock_mhz=1000, dram_gbps=g) for g in (0.125, 0.0125)}
    assert design[0.125].dram_bits_per_cycle == 1 and design[0.0125].dram_bits_per_cycle == Fraction(1, 10)
    cycles = {g: schedule.closed_form(mats, [16], d) for g, d in design.items()}
    overhead = cycles[0.125] - 4096                      # pipeline fill and post-processing
    assert cycles[0.0125] == 40960 + overhead, cycles
    assert schedule.simulate(mats, [16], design[0.0125]) == cycles[0.0125]
    assert dm.preset("fp12").dram_bits_per_cycle == 204        # 12.8 GB/s at 500 MHz: 204.8, whole bits


def test_an_equal_area_design_beyond_the_largest_array_names_the_users_rows():
    with pytest.raises(UserError, match=r"--rows") as e:
        dm.preset("ternary-eq", rows=5_000_000)
    assert "20,111,009" in str(e.value) or "more than" in str(e.value)


def test_design_lines_count_one_pe_and_one_table_row_in_the_singular():
    ex = random_export(np.random.default_rng(13), hidden=8, quant="binary", kind="char", n_in=4, bn=False)
    from rbtw.accel import report
    lines = report.design_lines(ex, dm.preset("binary", rows=1, cols=1))
    assert lines[0].startswith("design binary: 1×1 = 1 PE, SRAM") and " 1 PEs" not in lines[0]
    assert "(1 row)" in lines[2] and "1 rows" not in lines[2]
    assert "= 1,024 PEs," in report.design_lines(ex, dm.preset("binary", rows=32, cols=32))[0]
    rows = report.figures(ex, [dm.preset("fp12", rows=1, cols=1), dm.preset("binary", rows=1, cols=1),
                               dm.preset("binary-eq", rows=1, cols=1)])
    (eq,) = [line for line in report.explain(rows) if "same PE-array area" in line]
    assert "in the area of 1 multiply-accumulate PE)" in eq
