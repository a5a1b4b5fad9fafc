"""The F2U poster's Inception FIDs (Yonetani et al. 2019, 5 clients, after up to 80 epochs), the
numbers the tables put beside ours: ``{(dataset, split): {rule: FID}}``."""

POSTER = {("mnist", "non_ovl"): {"mdgan": 38.42, "gman": 67.69, "f2u": 22.19, "f2a": 18.96},
          ("fashion_mnist", "non_ovl"): {"mdgan": 56.09, "gman": 56.79, "f2u": 43.67, "f2a": 37.16}}
