"""The names a model is described by: its recurrent cell and its kind.

Training (``rbtw.nn``, ``rbtw.models``), the configuration, the export format and the packed
inference engine all read these; they live here, with no imports, so that inference does not
reach into training code to learn them.  The quantization modes belong to ``rbtw.quant``.

    GATES        cell -> gate blocks per hidden unit: G = GATES[cell] * H rows of W_x and W_h
                 (LSTM: i, f, g, o; GRU: r, u, n)
    MODEL_KINDS  "char" (character LM), "word" (word LM), "classify" (sequence classifier)
"""

GATES = {"lstm": 4, "gru": 3}
CELLS = tuple(GATES)
MODEL_KINDS = ("char", "word", "classify")
