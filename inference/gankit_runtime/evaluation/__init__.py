"""eval without torch: a generator scored in the features of a shipped classifier (evaluate), the figures
(metrics), and the MNIST-like data sets it compares with (datasets)."""
