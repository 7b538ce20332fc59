"""Browse: the generated files of `outputs-index/` (the map README, a README per
dataset/model, loss-curve SVGs), drawn from the entries that `render.record.index` reads.
"""
