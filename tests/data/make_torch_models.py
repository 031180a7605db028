"""Writes tests/data/torch_models/*.pth and outputs.npz: narrow generators and discriminators in
the module structure (hence the state_dict keys) of the reference's models/networks.py and
pix2pixHD's models/networks.py, with random weights and batch-norm statistics, and their
outputs on fixed inputs in eval mode. Run with torch (not a dependency of the project):

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python tests/data/make_torch_models.py

The networks are written for this project from the two repositories' definitions (same
Sequential indices, same layer options); the tests compare our outputs for the same weights.
"""

import functools
import pathlib

import numpy as np
import torch
import torch.nn as nn

OUT = pathlib.Path(__file__).parent / "torch_models"


class Identity(nn.Module):
    def forward(self, x):
        return x


def norm_layer(kind):
    """The reference's get_norm_layer: use_bias follows from it (instance only)."""
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)

    def none(channels):
        return Identity()
    return none


def uses_bias(norm):
    return isinstance(norm, functools.partial) and norm.func == nn.InstanceNorm2d


class ResnetBlock(nn.Module):
    def __init__(self, dim, norm, dropout, bias):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim), nn.ReLU(True)]
        if dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm, dropout, n_blocks):
        super().__init__()
        bias = uses_bias(norm)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), norm(ngf),
                 nn.ReLU(True)]
        for i in range(2):
            m = 2**i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias), norm(ngf * m * 2),
                      nn.ReLU(True)]
        model += [ResnetBlock(ngf * 4, norm, dropout, bias) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1,
                                         bias=bias), norm(ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm=None, dropout=False):
        super().__init__()
        self.outermost = outermost
        bias = uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=bias)
            model = [downrelu, downconv, uprelu, upconv, norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=bias)
            model = [downrelu, downconv, norm(inner_nc), submodule, uprelu, upconv,
                     norm(outer_nc)] + ([nn.Dropout(0.5)] if dropout else [])
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm, dropout):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm,
                                            dropout=dropout)
        for outer, inner in ((4, 8), (2, 4), (1, 2)):
            block = UnetSkipConnectionBlock(ngf * outer, ngf * inner, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc, block, outermost=True,
                                             norm=norm)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers, norm):
        super().__init__()
        bias = uses_bias(norm)
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), norm(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), norm(ndf * mult),
                nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


# pix2pixHD: every convolution has a bias; its instance norm is affine-free.

class HDResnetBlock(nn.Module):
    def __init__(self, dim, norm):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class GlobalGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_downsampling, n_blocks, norm):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
        for i in range(n_downsampling):
            m = 2**i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), norm(ngf * m * 2), nn.ReLU(True)]
        m = 2**n_downsampling
        model += [HDResnetBlock(ngf * m, norm) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            m = 2 ** (n_downsampling - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
                      norm(ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class LocalEnhancer(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_downsample_global, n_blocks_global,
                 n_local_enhancers, n_blocks_local, norm):
        super().__init__()
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * 2**n_local_enhancers
        model_global = GlobalGenerator(input_nc, output_nc, ngf_global, n_downsample_global,
                                       n_blocks_global, norm).model
        self.model = nn.Sequential(*[model_global[i] for i in range(len(model_global) - 3)])
        for n in range(1, n_local_enhancers + 1):
            ngf_global = ngf * 2 ** (n_local_enhancers - n)
            down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf_global, 7), norm(ngf_global),
                    nn.ReLU(True), nn.Conv2d(ngf_global, ngf_global * 2, 3, 2, 1),
                    norm(ngf_global * 2), nn.ReLU(True)]
            up = [HDResnetBlock(ngf_global * 2, norm) for _ in range(n_blocks_local)]
            up += [nn.ConvTranspose2d(ngf_global * 2, ngf_global, 3, 2, 1, output_padding=1),
                   norm(ngf_global), nn.ReLU(True)]
            if n == n_local_enhancers:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*down))
            setattr(self, f"model{n}_2", nn.Sequential(*up))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x):
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            branch = pyramid[self.n_local_enhancers - n]
            out = getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(branch) + out)
        return out


class MultiscaleDiscriminator(nn.Module):
    """getIntermFeat=True: `scale{k}_layer{j}`; scale num_D-1 sees full resolution."""

    def __init__(self, input_nc, ndf, n_layers, norm, num_d):
        super().__init__()
        self.num_d, self.n_layers = num_d, n_layers
        for k in range(num_d):
            nf = ndf
            layers = [[nn.Conv2d(input_nc, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]]
            for _ in range(1, n_layers):
                prev, nf = nf, min(nf * 2, 512)
                layers += [[nn.Conv2d(prev, nf, 4, 2, 2), norm(nf), nn.LeakyReLU(0.2, True)]]
            prev, nf = nf, min(nf * 2, 512)
            layers += [[nn.Conv2d(prev, nf, 4, 1, 2), norm(nf), nn.LeakyReLU(0.2, True)]]
            layers += [[nn.Conv2d(nf, 1, 4, 1, 2)]]
            for j, layer in enumerate(layers):
                setattr(self, f"scale{k}_layer{j}", nn.Sequential(*layer))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x):
        outputs = []
        for i in range(self.num_d):
            k = self.num_d - 1 - i
            features, y = [], x
            for j in range(self.n_layers + 2):
                y = getattr(self, f"scale{k}_layer{j}")(y)
                features.append(y)
            outputs.append(features)
            if i != self.num_d - 1:
                x = self.downsample(x)
        return outputs


def randomise(net, seed):
    """Weights and biases of unit-scale outputs; batch-norm statistics away from 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else \
                    module.weight.shape[0] * module.weight[0, 0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
                module.bias.copy_(0.1 * torch.randn(c, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                module.running_var.copy_(0.5 + torch.rand(c, generator=g))
                module.num_batches_tracked.fill_(7)
    return net.eval()


# name -> (network, input shape); sizes keep the files small (a few hundred KB in all).
CASES = {
    "unet_batch_dropout": (lambda n: UnetGenerator(3, 3, 6, 4, n("batch"), True), (2, 3, 64, 64)),
    "unet_instance": (lambda n: UnetGenerator(3, 3, 6, 4, n("instance"), False), (2, 3, 64, 64)),
    "unet_none": (lambda n: UnetGenerator(1, 3, 5, 4, n("none"), False), (2, 1, 32, 32)),
    "resnet_batch_dropout": (lambda n: ResnetGenerator(3, 3, 4, n("batch"), True, 6),
                             (2, 3, 32, 32)),
    "resnet_instance": (lambda n: ResnetGenerator(3, 3, 4, n("instance"), False, 9),
                        (2, 3, 32, 32)),
    "resnet_none_dropout": (lambda n: ResnetGenerator(3, 1, 4, n("none"), True, 6),
                            (2, 3, 32, 32)),
    "d_basic_batch": (lambda n: NLayerDiscriminator(6, 4, 3, n("batch")), (2, 6, 64, 64)),
    "hd_global": (lambda n: GlobalGenerator(6, 3, 4, 3, 2, n("instance")), (2, 6, 32, 48)),
    "hd_local": (lambda n: LocalEnhancer(6, 3, 2, 2, 2, 1, 1, n("instance")), (2, 6, 32, 48)),
    "hd_multiscale_d": (lambda n: MultiscaleDiscriminator(9, 4, 2, n("instance"), 2),
                        (2, 9, 32, 48)),
}


def save_state_dict(net, path, prefix=""):
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)


def main():
    OUT.mkdir(exist_ok=True)
    outputs = {}
    for seed, (name, (make, shape)) in enumerate(sorted(CASES.items())):
        net = randomise(make(norm_layer), seed)
        # One file as DataParallel saves it (`module.` prefix), as users' often are.
        save_state_dict(net, OUT / f"{name}.pth", "module." if name == "unet_instance" else "")
        x = torch.rand(shape, generator=torch.Generator().manual_seed(100 + seed)) * 2 - 1
        with torch.no_grad():
            y = net(x)
        outputs[f"{name}/input"] = x.permute(0, 2, 3, 1).numpy()
        if isinstance(y, list):
            for i, scale in enumerate(y):
                for j, feature in enumerate(scale):
                    outputs[f"{name}/output_{i}_{j}"] = feature.permute(0, 2, 3, 1).numpy()
        else:
            outputs[f"{name}/output"] = y.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(OUT / "outputs.npz", **outputs)
    print(f"wrote {len(CASES)} networks to {OUT}")


if __name__ == "__main__":
    main()
