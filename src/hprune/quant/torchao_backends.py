"""torchao backends: int4 weight-only (W4A16) and float8 rowwise (W8A8, for reference).

torchao stores weights as tensor subclasses, which safetensors cannot hold, so
these save with torch.save and load with hprune's loader (weights_only=False:
only load files you made yourself).
"""

from __future__ import annotations

from hprune.quant import Backend


class TorchaoBackend(Backend):
    def ao_config(self, config):
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int4WeightOnlyConfig, PerRow

        if self.extra["kind"] == "int4":
            return Int4WeightOnlyConfig(group_size=_int4_group(config), int4_packing_format=self.extra["packing"])
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())

    def supports(self, linear, config) -> bool:
        # torchao leaves an int4 layer whose input width its groups do not divide as it was, saying
        # so only in an info log (quant_api._int4_weight_only_quantize_tensor): name it kept instead
        return self.extra["kind"] != "int4" or (linear.in_features > 0 and linear.in_features % _int4_group(config) == 0)

    def convert(self, model, names, config):
        from torchao.quantization import quantize_

        wanted = set(names)
        if self.extra["kind"] == "int4":  # torchao's int4 layouts take bfloat16 weights only (from_hp asserts it)
            for name in wanted:
                model.get_submodule(name).to(config.torch_compute_dtype)
        quantize_(model, self.ao_config(config), filter_fn=lambda module, fqn: fqn in wanted)

    def restore(self, model, names, state, config, device):
        model.to_empty(device=device)
        self.convert(model, names, config)  # builds the subclass layout; the saved values replace it
        model.load_state_dict(state, strict=True, assign=True)


def _int4_group(config) -> int:
    """Inputs per int4 scale: the config's group size, 128 where it asks for none (0)."""
    return config.group_size or 128


_COMMON = dict(packages=("torchao",), pip_names=("torchao",), needs_gpu=True, file_format="torch")
BACKENDS = [
    TorchaoBackend(
        name="torchao-int4",
        summary="torchao int4 weight-only, group 128, plain layout (mslk kernels; pip install mslk-cuda)",
        extra={"kind": "int4", "packing": "plain"},
        **{**_COMMON, "packages": ("torchao", "mslk"), "pip_names": ("torchao", "mslk-cuda")},
    ),
    TorchaoBackend(
        name="torchao-int4-tinygemm",
        summary="torchao int4 weight-only, group 128, tinygemm layout (kernel in PyTorch itself)",
        extra={"kind": "int4", "packing": "tile_packed_to_4d"}, **_COMMON,
        caution=("torchao-int4-tinygemm's kernel is made for a few tokens per call: at 1024x1024 it ran 10-12x "
                 "slower than the bf16 original on an H200 (docs/benchmarks.md); for speed pick w4fp8 (FP8 GPUs: "
                 "Ada, Hopper or newer) or bnb-nf4."),
    ),
    TorchaoBackend(
        name="torchao-fp8",
        summary="torchao float8 rowwise weights and activations (8-bit, W8A8): the speed reference, not 4-bit",
        extra={"kind": "fp8"}, **_COMMON,
    ),
]
