"""The bottom floor: money (minor units, rounding, text), billing months and program.yaml.

Everything else in `pipelines` builds on these; nothing here imports another `pipelines` package.
"""
