"""Latency and memory of the real SD3.5 / FLUX.1 architectures, original vs compressed.

Weights are random (no download): speed and memory do not depend on their
values. `archs` holds the published configs, `plans` the block plans,
`measure` the timing and memory protocol, `text_encoders` the T5/CLIP side,
`runner` puts them together into bench.json rows.
"""
