#!/usr/bin/env python3
"""contrastive_torch.clip_loss against PyTorch's own CLIP loss (eager and torch.compile),
forward + backward, in one markdown table: median milliseconds (CUDA events) and the extra peak
memory beyond the inputs.

    PYTHONPATH=python python3 python/benchmarks/bench_clip.py [--n 4096,32768] [--d 512]
        [--dtypes bf16,fp32] [--no-compile] [--device cuda|cpu]

PyTorch's loss comes from the anchor script named by $CONTRASTIVE_TORCH_ANCHOR (its clip_loss and
bench functions, so both sides are timed by the same harness); without it, an equivalent
mm + F.cross_entropy loss defined here is used and the table says so. --device cpu is a smoke
run of the harness (wall-clock timing).
"""
import argparse
import importlib.util
import os
import statistics
import time

import torch
import torch.nn.functional as F

import contrastive_torch as ct

DT = {"bf16": (torch.bfloat16, False), "fp16": (torch.float16, False),
      "tf32": (torch.float32, True), "fp32": (torch.float32, False)}


def torch_clip_loss(a, b, scale):
    logits = scale * (a @ b.t())
    lab = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits.float(), lab) + F.cross_entropy(logits.t().float(), lab))


def bench_cuda(fn, reps, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def bench_cpu(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts)


def load_anchor():
    path = os.environ.get("CONTRASTIVE_TORCH_ANCHOR")
    if not path:
        return None, "PyTorch loss: mm + F.cross_entropy defined in bench_clip.py ($CONTRASTIVE_TORCH_ANCHOR unset)"
    module_spec = importlib.util.spec_from_file_location("torch_clip_anchor", path)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    return mod, f"PyTorch loss: clip_loss of {os.path.basename(path)}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", default="4096,32768")
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--dtypes", default="bf16,fp32")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--device", default="cuda")
    p.add_argument("--reps", type=int, default=0, help="0: 12 (5 at N >= 65536)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench_clip: no CUDA device (use --device cpu for a smoke run)")
    anchor, note = load_anchor()
    ref = anchor.clip_loss if anchor is not None else torch_clip_loss
    bench = (anchor.bench if anchor is not None else bench_cuda) if cuda else bench_cpu
    where = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"PyTorch {torch.__version__} on {where}; D = {args.d}; {note}; "
          f"contrastive_torch from {ct.library_path}")
    print("| impl | dtype | N | ms | x torch eager | extra peak GiB |")
    print("|---|---|---|---|---|---|")
    impls = [("contrastive_torch.clip_loss", ct.clip_loss), ("torch eager", ref)]
    if not args.no_compile:
        impls.append(("torch.compile", torch.compile(ref)))
    for name in args.dtypes.split(","):
        dt, tf32 = DT[name]
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        for n in (int(x) for x in args.n.split(",")):
            g = torch.Generator(device=args.device).manual_seed(0)
            a = F.normalize(torch.randn(n, args.d, device=args.device, generator=g), dim=1).to(dt)
            b = F.normalize(torch.randn(n, args.d, device=args.device, generator=g), dim=1).to(dt)
            a.requires_grad_()
            b.requires_grad_()
            scale = torch.tensor(14.0, device=args.device)
            reps = args.reps or (5 if n >= 65536 else 12)
            rows = []
            for impl, fn in impls:
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()

                def step():
                    a.grad = b.grad = None
                    fn(a, b, scale).backward()
                try:
                    ms = bench(step, reps)
                except RuntimeError as e:  # torch.cuda.OutOfMemoryError derives from it
                    if "out of memory" not in str(e).lower():
                        raise
                    rows.append((impl, None, None))
                    continue
                peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else float("nan")
                rows.append((impl, ms, peak))
            eager = next((ms for impl, ms, _ in rows if impl == "torch eager"), None)
            for impl, ms, peak in rows:
                if ms is None:
                    print(f"| {impl} | {name} | {n} | OOM | - | - |", flush=True)
                    continue
                ratio = f"{ms / eager:.2f}" if eager else "-"
                print(f"| {impl} | {name} | {n} | {ms:.2f} | {ratio} | {peak:.2f} |", flush=True)
            del a, b


if __name__ == "__main__":
    main()
