"""Evaluation: each metric is one small module.

    perplexity.py   fixed-length windows, NLL over every scored token (WikiText-2 protocol)
    qa.py           question answering with three-tier matching, closed and open book
    toolcall.py     tool / syntax / parameter accuracy on the held-out tool-call split
    choice.py       multiple-choice log-likelihood (HellaSwag, Winogrande)
    facts.py        parameters, bytes on disk, peak memory, prefill/decode tokens/s, threads
    runlog.py       one JSON line per run (command, config, git revision, metrics, wall time)
"""
