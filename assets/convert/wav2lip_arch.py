"""The Wav2Lip generator (Prajwal et al. 2020), as in the Wav2Lip repository's
models/wav2lip.py and models/conv.py: wav2lip.pth and wav2lip_gan.pth both hold this
network's weights (the GAN variant differs only in how it was trained)."""
import torch
from torch import nn


class Conv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv_block(x))


def _res(c):
    return Conv2d(c, c, kernel_size=3, stride=1, padding=1, residual=True)


class Wav2Lip(nn.Module):
    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(6, 16, kernel_size=7, stride=1, padding=3)),
            nn.Sequential(Conv2d(16, 32, kernel_size=3, stride=2, padding=1), _res(32), _res(32)),
            nn.Sequential(Conv2d(32, 64, kernel_size=3, stride=2, padding=1), _res(64), _res(64), _res(64)),
            nn.Sequential(Conv2d(64, 128, kernel_size=3, stride=2, padding=1), _res(128), _res(128)),
            nn.Sequential(Conv2d(128, 256, kernel_size=3, stride=2, padding=1), _res(256), _res(256)),
            nn.Sequential(Conv2d(256, 512, kernel_size=3, stride=2, padding=1), _res(512)),
            nn.Sequential(Conv2d(512, 512, kernel_size=3, stride=1, padding=0),
                          Conv2d(512, 512, kernel_size=1, stride=1, padding=0)),
        ])
        self.audio_encoder = nn.Sequential(
            Conv2d(1, 32, kernel_size=3, stride=1, padding=1), _res(32), _res(32),
            Conv2d(32, 64, kernel_size=3, stride=(3, 1), padding=1), _res(64), _res(64),
            Conv2d(64, 128, kernel_size=3, stride=3, padding=1), _res(128), _res(128),
            Conv2d(128, 256, kernel_size=3, stride=(3, 2), padding=1), _res(256),
            Conv2d(256, 512, kernel_size=3, stride=1, padding=0),
            Conv2d(512, 512, kernel_size=1, stride=1, padding=0),
        )
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(512, 512, kernel_size=1, stride=1, padding=0)),
            nn.Sequential(Conv2dTranspose(1024, 512, kernel_size=3, stride=1, padding=0), _res(512)),
            nn.Sequential(Conv2dTranspose(1024, 512, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(512), _res(512)),
            nn.Sequential(Conv2dTranspose(768, 384, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(384), _res(384)),
            nn.Sequential(Conv2dTranspose(512, 256, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(256), _res(256)),
            nn.Sequential(Conv2dTranspose(320, 128, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(128), _res(128)),
            nn.Sequential(Conv2dTranspose(160, 64, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(64), _res(64)),
        ])
        self.output_block = nn.Sequential(
            Conv2d(80, 32, kernel_size=3, stride=1, padding=1), nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, audio_sequences, face_sequences):
        # [B,1,80,16] mel and [B,6,96,96] faces; the repository's 5-D (time) inputs are
        # flattened by its caller before here, which is what reelbox's interface expects.
        x = self.audio_encoder(audio_sequences)
        feats = []
        f = face_sequences
        for block in self.face_encoder_blocks:
            f = block(f)
            feats.append(f)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat((x, feats.pop()), dim=1)
        return self.output_block(x)


def clean_state_dict(sd):
    """The generator's weights from a checkpoint: the repository saves
    {"state_dict": ..., "optimizer": ..., "global_step": ...} from a DataParallel model,
    so keys start with "module."."""
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def looks_like_wav2lip(keys):
    """True when a state dict's keys are the Wav2Lip generator's."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    return any(k.startswith("audio_encoder.") for k in keys) and any(k.startswith("face_decoder_blocks.") for k in keys)
