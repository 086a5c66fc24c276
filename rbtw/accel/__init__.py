"""Cycle-counting emulator of a binary/ternary LSTM (and GRU) accelerator.

    tech       energy/area per operation at 45 nm (one table, with sources)
    design     Design dataclass and presets fp12, binary, ternary, binary-eq, ternary-eq
    fixed      fixed-point formats, rounding, activation ROMs
    program    an export loaded onto a design (integer weights and tables)
    datapath   the emulator: Numba fixed-point LSTM/GRU, tile by tile over the PE array
    reference  NumPy fixed-point reference (whole-matrix products), bit-exact with datapath
    engine     AccelEngine: PackedEngine-like interface (float logits from fixed-point h)
    schedule   cycles per step (the tile loop as executed, and a closed form), memory,
               energy, area
    report     side-by-side table of designs
    host       the host loop of generation: token draws and the datapath in one jitted call
"""
