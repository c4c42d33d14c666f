"""Rate–distortion benchmarks (the ``bench`` extra): codecs run and decoded here, metrics, Bjøntegaard
deltas, reports and plots. Imported only by ``vaezip bench``."""
