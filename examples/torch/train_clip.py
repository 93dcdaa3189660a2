#!/usr/bin/env python3
"""Two towers on Fashion-MNIST trained in PyTorch with contrastive_torch.clip_loss.

The setting of examples/train_two_tower.cpp (its CLIP row): one Fashion-MNIST image is cut at
row 14; modality A is the clean top half (14 x 28), modality B the bottom half plus Gaussian
noise (std 0.2, redrawn every epoch in training, fixed per image for evaluation). Each tower is
an MLP backbone (Linear -> LayerNorm -> GELU, widths 256 and 128), a projection head (Linear ->
ReLU -> Linear, 128 -> 64) and L2 normalisation; the symmetric CLIP loss has a learnable logit
scale (initialised to 1/0.1, clamped at 100 as CLIP does). AdamW with a warm-up + cosine
schedule. After training, a linear probe (logistic regression) on the frozen embeddings of A, B
and A+B measures how much class information the aligned embeddings keep.

    PYTHONPATH=python /usr/bin/python3 examples/torch/train_clip.py --quick

Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or --data-dir.
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

try:
    import contrastive_torch as ct
except ImportError:  # run from the repository without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import contrastive_torch as ct

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load_split(data_dir, prefix, limit):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz")).long()
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = images.float().div_(255.0)
    return x[:, :14].reshape(len(x), -1), x[:, 14:].reshape(len(x), -1), labels


class Tower(nn.Module):
    def __init__(self, inputs, hidden=(256, 128), head_hidden=128, embed=64):
        super().__init__()
        layers, prev = [], inputs
        for w in hidden:
            layers += [nn.Linear(prev, w), nn.LayerNorm(w), nn.GELU()]
            prev = w
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(prev, head_hidden), nn.ReLU(), nn.Linear(head_hidden, embed))

    def forward(self, x):
        return F.normalize(self.head(self.backbone(x)), dim=-1)


def embed(tower, x, batch=2048):
    with torch.no_grad():
        return torch.cat([tower(x[i:i + batch]) for i in range(0, len(x), batch)])


def warmup_cosine(opt, total, warmup_fraction=0.05):
    """Linear warm-up, then a half cosine to 0 (the C++ examples' schedule)."""
    warm = max(1, int(warmup_fraction * total))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def linear_probe(tr, ytr, te, yte, epochs, lr=3e-3, batch=256, seed=0):
    """Logistic regression on features standardised with the training mean and std, from a zero
    weight (a convex problem), as examples/encoder/probe.hpp trains it."""
    g = torch.Generator().manual_seed(seed)
    mean, std = tr.mean(0), tr.std(0, unbiased=False).clamp_min(1e-6)
    tr, te = (tr - mean) / std, (te - mean) / std
    probe = nn.Linear(tr.shape[1], 10)
    with torch.no_grad():
        probe.weight.zero_()
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(tr) / batch)
    sched = warmup_cosine(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(probe(tr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return (probe(te).argmax(1) == yte).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("FASHION_MNIST_DIR", DEFAULT_DATA))
    p.add_argument("--quick", action="store_true", help="10000 training images, 3 epochs, 10 probe epochs")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests: 1024 images, 2 epochs; implies --check")
    p.add_argument("--check", action="store_true", help="exit 2 unless the loss fell and the A+B probe beat chance")
    p.add_argument("--train-size", type=int, default=0, help="0: all 60000")
    p.add_argument("--test-size", type=int, default=0, help="0: all 10000")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--temperature", type=float, default=0.1, help="initial temperature (1 / logit scale)")
    p.add_argument("--noise-b", type=float, default=0.2)
    p.add_argument("--probe-epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: all cores)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.smoke:
        args.train_size = args.train_size or 1024
        args.test_size = args.test_size or 1000
        args.epochs, args.probe_epochs, args.check = 2, 5, True
    elif args.quick:
        args.train_size = args.train_size or 10000
        args.epochs, args.probe_epochs = 3, 10
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(args.seed)

    if not os.path.isfile(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")):
        print(f"train_clip: Fashion-MNIST not found in {args.data_dir} (apt-get install "
              "dataset-fashion-mnist, or --data-dir); skipped", file=sys.stderr)
        sys.exit(77)  # ctest's skip code

    t0 = time.time()
    a_tr, b_tr, y_tr = load_split(args.data_dir, "train", args.train_size)
    a_te, b_te, y_te = load_split(args.data_dir, "t10k", args.test_size)
    g_eval = torch.Generator().manual_seed(args.seed + 1000)
    b_tr_eval = b_tr + args.noise_b * torch.randn(b_tr.shape, generator=g_eval)
    b_te_eval = b_te + args.noise_b * torch.randn(b_te.shape, generator=g_eval)
    print(f"data: {len(a_tr)} train / {len(a_te)} test pairs, A {a_tr.shape[1]} and B {b_tr.shape[1]} "
          f"inputs, {torch.get_num_threads()} threads")

    tower_a, tower_b = Tower(a_tr.shape[1]), Tower(b_tr.shape[1])
    log_scale = nn.Parameter(torch.tensor(math.log(1 / args.temperature)))
    params = list(tower_a.parameters()) + list(tower_b.parameters())
    decay = [q for q in params if q.dim() > 1]
    no_decay = [q for q in params if q.dim() <= 1] + [log_scale]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = len(a_tr) // args.batch
    total = args.epochs * steps_per_epoch
    sched = warmup_cosine(opt, total)
    first = last = None
    for epoch in range(args.epochs):
        g = torch.Generator().manual_seed(args.seed * 7919 + epoch)
        b_noisy = b_tr + args.noise_b * torch.randn(b_tr.shape, generator=g)
        perm = torch.randperm(len(a_tr), generator=g)
        run = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            za, zb = tower_a(a_tr[idx]), tower_b(b_noisy[idx])
            loss = ct.clip_loss(za, zb, log_scale.exp())   # learnable temperature, no host sync
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                log_scale.clamp_(max=math.log(100.0))
            run += loss.item()
            if first is None:
                first = loss.item()
        last = run / max(1, steps_per_epoch)
        print(f"epoch {epoch + 1}/{args.epochs}: mean CLIP loss {last:.4f}, "
              f"logit scale {log_scale.exp().item():.2f}, {time.time() - t0:.1f} s")
    train_s = time.time() - t0

    za_tr, zb_tr = embed(tower_a, a_tr), embed(tower_b, b_tr_eval)
    za_te, zb_te = embed(tower_a, a_te), embed(tower_b, b_te_eval)
    with torch.no_grad():  # test chunks of 256, as train_two_tower reports them
        chunk = min(256, len(za_te))
        n_chunks = len(za_te) // chunk
        test_loss = hits = 0.0
        for i in range(n_chunks):
            ca, cb = za_te[i * chunk:(i + 1) * chunk], zb_te[i * chunk:(i + 1) * chunk]
            test_loss += ct.clip_loss(ca, cb, log_scale.exp()).item() / n_chunks
            hits += (ca @ cb.T).argmax(1).eq(torch.arange(chunk)).sum().item()
        top1 = hits / (n_chunks * chunk)
    raw = linear_probe(torch.cat([a_tr, b_tr_eval], 1), y_tr, torch.cat([a_te, b_te_eval], 1), y_te,
                       args.probe_epochs, seed=args.seed + 23)
    pa = linear_probe(za_tr, y_tr, za_te, y_te, args.probe_epochs, seed=args.seed + 20)
    pb = linear_probe(zb_tr, y_tr, zb_te, y_te, args.probe_epochs, seed=args.seed + 21)
    pab = linear_probe(torch.cat([za_tr, zb_tr], 1), y_tr, torch.cat([za_te, zb_te], 1), y_te,
                       args.probe_epochs, seed=args.seed + 22)
    total_s = time.time() - t0
    print(f"test CLIP loss {test_loss:.4f}, A->B top-1 {100 * top1:.1f}% (chunks of {chunk}); "
          f"linear probe test accuracy: A {100 * pa:.2f}%, B {100 * pb:.2f}%, A+B {100 * pab:.2f}% "
          f"(raw pixels A+B {100 * raw:.2f}%; chance 10%)")
    print(f"time: training {train_s:.1f} s, total {total_s:.1f} s")
    if args.check:
        n = len(y_te)
        threshold = 0.1 + 3 * math.sqrt(0.1 * 0.9 / n)
        ok = last < first and pab > threshold
        print(f"check: loss fell ({first:.4f} -> {last:.4f}) and probe A+B {100 * pab:.2f}% > "
              f"{100 * threshold:.2f}%: {'yes' if ok else 'NO'}")
        if not ok:
            sys.exit(2)


if __name__ == "__main__":
    main()
