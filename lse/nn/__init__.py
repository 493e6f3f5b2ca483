"""The torch layer: a DNA becomes a model (build), inherits weights (inherit), is counted
(flops), trained and evaluated (train) on a data set (data, synthetic)."""
