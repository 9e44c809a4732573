"""MaestroMotif on NetHack: annotation, reward models per skill, skill programs, skill-policy training, evaluation.

`experiment.run` (gin `maestromotif`, binary `experiments.maestromotif`) runs the phases; `docs/maestromotif.md`
has the figures and the differences from the reference.
"""
