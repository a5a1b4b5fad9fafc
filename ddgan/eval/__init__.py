"""Evaluation of a run's generators and discriminators: ``python -m ddgan.eval --run DIR``.

classifier.py  the per-dataset domain classifier, trained once and cached with its checksum
metrics.py     class coverage, confident fraction, KL to the target, fid_classifier, precision/recall
svm.py         Kosmopoulos' protocol: a linear SVM on each discriminator's activations
plots.py       loss, lambda, forgiver-share and class-histogram figures
report.py      eval.json and report.md
"""
