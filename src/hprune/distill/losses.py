"""L = kd_weight * L_KD + feat_weight * L_feat (paper Eq. 3-4).

L_KD: MSE between student and teacher velocity at the same noisy input and
timestep. L_feat: sum over matched trainable blocks of the MSE between the
student block's outputs and those of the teacher block it was cut from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class FeatureTap:
    """Records the (context, image) outputs of some blocks on every forward."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.outputs: dict[str, tuple] = {}
        self._handles = [m.register_forward_hook(self._hook(key)) for key, m in modules.items()]

    def _hook(self, key):
        def hook(_module, _args, output):
            self.outputs[key] = output
        return hook

    def pop(self) -> dict[str, tuple]:
        out, self.outputs = self.outputs, {}
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def feature_loss(student: dict[str, tuple], teacher: dict[str, tuple]) -> torch.Tensor:
    total = None
    for key, s_out in student.items():
        for s, t in zip(s_out, teacher[key]):
            if s is None or t is None:  # SD3's last block returns no context
                continue
            term = F.mse_loss(s.float(), t.float())
            total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def kd_loss(student_v: torch.Tensor, teacher_v: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student_v.float(), teacher_v.float())
