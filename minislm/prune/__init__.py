"""Pruning and trimming: functions from a model to a new, smaller or sparser model.

    depth.py      remove whole blocks (importance: magnitude, Taylor, perplexity,
                  block importance; symmetric middle; Franken skip/repeat)
    width.py      Minitron-style trimming of heads, MLP neurons, embedding channels
    magnitude.py  unstructured L1 magnitude pruning (per layer / global)
    wanda.py      WANDA |W|·‖X‖ pruning, unstructured and N:M
    sparsegpt.py  SparseGPT: OBS mask selection with weight reconstruction
    report.py     sparsity, parameter counts, dense vs CSR vs N:M bytes
    masks.py      the keep-masks shared by the unstructured methods

Calibration statistics live one floor below, in `minislm.calibration`.
"""
