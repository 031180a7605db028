"""Times pix2pixHD's training iteration in PyTorch, for side-by-side comparison with ours.

Written for this project from pix2pixHD's description (NVIDIA/pix2pixHD models/networks.py and
pix2pixHD_model.py): the global generator (or the local enhancer), the multi-scale PatchGAN
discriminator returning every layer's output, LSGAN summed over the scales, GAN feature
matching (4 / (n_layers + 1) per layer, 1 / num_D per scale) and the VGG19 loss (relu1_1 ..
relu5_1, weights 1/32 .. 1), each weighted by lambda_feat = 10; instance norm; Adam(2e-4, 0.5).
One iteration as pix2pixHD's train.py: G forward; D on the detached fake, on the real pair and
on the fake pair for G; G's step, then D's. Synthetic label maps (one-hot + boundary channel)
and photos, random VGG weights: only the iteration is timed.

Set-up: python3 -m venv VENV && VENV/bin/pip install torch==2.13.0
Run:    VENV/bin/python benchmarks/torch_pix2pixhd.py --height 256 --width 512 --steps 4
        VENV/bin/python benchmarks/torch_pix2pixhd.py --count   (parameter counts only)
Prints one JSON line: images_per_sec, step_time_s (median), flops_per_step, parameters.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def norm(channels):
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def global_layers(input_nc, output_nc, ngf, n_down, n_blocks):
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
    for i in range(n_down):
        m = 2**i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), norm(ngf * m * 2), nn.ReLU(True)]
    layers += [ResnetBlock(ngf * 2**n_down) for _ in range(n_blocks)]
    for i in range(n_down):
        m = 2 ** (n_down - i)
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
                   norm(ngf * m // 2), nn.ReLU(True)]
    return [*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


class LocalEnhancer(nn.Module):
    def __init__(self, input_nc, output_nc, ngf=32, n_down=4, n_blocks=9, n_local=1,
                 n_blocks_local=3):
        super().__init__()
        self.n_local = n_local
        self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf * 2**n_local,
                                                  n_down, n_blocks)[:-3])
        for n in range(1, n_local + 1):
            f = ngf * 2 ** (n_local - n)
            down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, f, 7), norm(f), nn.ReLU(True),
                    nn.Conv2d(f, f * 2, 3, 2, 1), norm(f * 2), nn.ReLU(True)]
            up = [ResnetBlock(f * 2) for _ in range(n_blocks_local)]
            up += [nn.ConvTranspose2d(f * 2, f, 3, 2, 1, output_padding=1), norm(f),
                   nn.ReLU(True)]
            if n == n_local:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*down))
            setattr(self, f"model{n}_2", nn.Sequential(*up))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        pyramid = [x]
        for _ in range(self.n_local):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local + 1):
            out = getattr(self, f"model{n}_2")(
                getattr(self, f"model{n}_1")(pyramid[self.n_local - n]) + out)
        return out


class PatchD(nn.Module):
    def __init__(self, input_nc, ndf=64, n_layers=3):
        super().__init__()
        blocks = [[nn.Conv2d(input_nc, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            blocks.append([nn.Conv2d(prev, nf, 4, 2 if n < n_layers else 1, 2), norm(nf),
                           nn.LeakyReLU(0.2, True)])
        blocks.append([nn.Conv2d(nf, 1, 4, 1, 2)])
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks)

    def forward(self, x):
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


class MultiscaleD(nn.Module):
    def __init__(self, input_nc, num_d=2, ndf=64, n_layers=3):
        super().__init__()
        self.scales = nn.ModuleList(PatchD(input_nc, ndf, n_layers) for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        out = []
        for i, scale in enumerate(self.scales):
            out.append(scale(x))
            if i != len(self.scales) - 1:
                x = self.downsample(x)
        return out


class VGG19(nn.Module):
    """torchvision's VGG19 `features` up to relu5_1, in pix2pixHD's five slices."""

    def __init__(self):
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
               512]
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(True)]
                c = v
        f = nn.Sequential(*layers)
        self.slices = nn.ModuleList([f[0:2], f[2:7], f[7:12], f[12:21], f[21:30]])
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x):
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--netG", default="global", choices=["global", "local"])
    p.add_argument("--label_nc", type=int, default=35)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--num_D", type=int, default=2)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--count", action="store_true", help="print parameter counts and exit")
    a = p.parse_args()
    torch.manual_seed(0)
    input_nc = a.label_nc + 1  # One-hot labels and the instance-boundary channel.
    if a.netG == "global":
        G = nn.Sequential(*global_layers(input_nc, 3, a.ngf, 4, 9))
    else:
        G = LocalEnhancer(input_nc, 3, a.ngf)
    D = MultiscaleD(input_nc + 3, a.num_D)
    counts = {"g_params": sum(x.numel() for x in G.parameters()),
              "d_params": sum(x.numel() for x in D.parameters())}
    if a.count:
        print(json.dumps({"netG": a.netG, "ngf": a.ngf, "num_D": a.num_D, **counts}))
        return
    vgg = VGG19()
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    ids = torch.randint(0, a.label_nc, (a.batch_size, 1, a.height, a.width))
    label = torch.zeros(a.batch_size, a.label_nc, a.height, a.width).scatter_(1, ids, 1.0)
    edges = (torch.rand(a.batch_size, 1, a.height, a.width) > 0.9).float()
    cond = torch.cat([label, edges], 1)
    real = torch.rand(a.batch_size, 3, a.height, a.width) * 2 - 1
    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def gan(outputs, is_real):
        return sum(mse(o[-1], torch.full_like(o[-1], float(is_real))) for o in outputs)

    def step():
        fake = G(cond)
        loss_d_fake = gan(D(torch.cat([cond, fake.detach()], 1)), False)
        pred_real = D(torch.cat([cond, real], 1))
        loss_d_real = gan(pred_real, True)
        pred_fake = D(torch.cat([cond, fake], 1))
        loss_g_gan = gan(pred_fake, True)
        feat = sum((1 / a.num_D) * (4 / 4) * l1(f, r.detach())
                   for pf, pr in zip(pred_fake, pred_real, strict=True)
                   for f, r in zip(pf[:-1], pr[:-1], strict=True))
        vgg_fake, vgg_real = vgg(fake), vgg(real)
        loss_vgg = sum(w * l1(f, r.detach())
                       for w, f, r in zip(weights, vgg_fake, vgg_real, strict=True))
        loss_g = loss_g_gan + 10.0 * feat + 10.0 * loss_vgg
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "impl": "pytorch-pix2pixhd", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "netG": a.netG, "batch_size": a.batch_size, "height": a.height, "width": a.width,
        "step_time_s": round(med, 4), "images_per_sec": round(a.batch_size / med, 4),
        "flops_per_step": flops, "achieved_gflops": round(flops / med / 1e9, 1), **counts}))


if __name__ == "__main__":
    main()
