"""The Pose Guider: a small CNN that turns a pose render into features added after the UNet's `conv_in`."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_BLOCK_OUT_CHANNELS = (16, 32, 96, 256)


class PoseGuider(nn.Module):
    """3×3 convolutions with SiLU; each width step is a same-width conv then a stride-2 conv.

    With widths (16, 32, 96, 256) that is three stride-2 steps, so a W×H render becomes a W/8×H/8 map with
    `out_channels` (the UNet's `conv_in` width) channels. Parameter names match the released checkpoint
    (`conv_in`, `blocks.N`, `conv_out`).
    """

    def __init__(
        self,
        out_channels: int,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = DEFAULT_BLOCK_OUT_CHANNELS,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for width_in, width_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            self.blocks.append(nn.Conv2d(width_in, width_in, 3, padding=1))
            self.blocks.append(nn.Conv2d(width_in, width_out, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, 3, padding=1)

    @property
    def out_channels(self) -> int:
        return self.conv_out.out_channels

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(pose))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)

    @staticmethod
    def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
        """Constructor arguments read off the tensors' shapes."""
        n_blocks = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        widths = [state_dict["conv_in.weight"].shape[0]]
        for i in range(1, n_blocks, 2):
            widths.append(state_dict[f"blocks.{i}.weight"].shape[0])
        return {
            "out_channels": state_dict["conv_out.weight"].shape[0],
            "conditioning_channels": state_dict["conv_in.weight"].shape[1],
            "block_out_channels": tuple(widths),
        }
