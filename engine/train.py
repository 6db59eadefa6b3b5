"""Train an image classifier on MNIST, Fashion-MNIST or an image folder.

    python -m engine.train --dataset mnist --model cnn --epochs 20 --out checkpoints/mnist_cnn.pt
    python -m engine.train --dataset fashion --epochs 40 --out checkpoints/fashion_cnn.pt
    python -m engine.train --dry-run                      # one batch, for CI
    python -m engine.train --resume runs/mnist.pt         # continue an interrupted run
    python -m engine.train --init checkpoints/mnist_cnn.pt --augment pen --epochs 3 --lr 0.02  # fine-tune
    torchrun --nproc_per_node=2 -m engine.train ...       # DistributedDataParallel (gloo on CPU, NCCL on CUDA)

The checkpoint at --out is rewritten atomically after every epoch, so a killed run loses at most the
epoch in progress and `--resume` picks up from the last finished one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from engine.checkpoint import lineage, load_checkpoint, save_checkpoint
from engine.data import (AUGMENT_PRESETS, TensorLoader, augment, centre_lines, default_data_dir, load_dataset,
                         to_input)
from engine.metrics import confusion_matrix, summarize
from engine.models import InputSpec, count_flops, create_model, list_models, resolve_model_args


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", help="mnist, fashion or folder:PATH (default: mnist)")
    p.add_argument("--model", default="cnn", help=f"one of {', '.join(list_models())} (default: cnn)")
    p.add_argument("--width", type=int, default=None, help="channel width for cnn (default: the model's, 16; the shipped models use 32)")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (default: 20)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default: 128)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the OneCycle schedule (default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing (default: 0.1)")
    p.add_argument("--augment", default="auto", choices=["auto", *AUGMENT_PRESETS],
                   help="augmentation preset; auto picks digits/fashion by dataset (default: auto)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: auto)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="bf16 autocast; auto uses it on CUDA and on CPUs with AMX/AVX512-BF16 (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = torch's default (default: 0)")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="folder with MNIST/ and FashionMNIST/ (default: $DIGITS_DATA_DIR or ./data)")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is missing")
    p.add_argument("--out", default="runs/model.pt", help="checkpoint path (default: runs/model.pt)")
    p.add_argument("--resume", default=None, help="checkpoint to continue from (its config is reused)")
    p.add_argument("--init", default=None,
                   help="start from this trained checkpoint's weights on a new schedule (fine-tuning); its "
                        "model and arguments are kept, --model and --width are not used (default: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--dry-run", action="store_true", help="run one training batch and one eval batch, then stop")
    p.add_argument("--stop-after-epoch", type=int, default=0,
                   help="stop once this epoch is saved, schedule unchanged; continue later with --resume "
                        "(time-sliced jobs; default: run all epochs)")
    p.add_argument("--max-train-images", type=int, default=0,
                   help="use only the first N training images (tests, quick looks; default: all)")
    p.add_argument("--max-test-images", type=int, default=0, help="likewise for the test set (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------
# Setup helpers


def cpu_has_fast_bf16(capabilities: dict | None = None) -> bool:
    """Native bf16 on this CPU (AMX-BF16 or AVX512-BF16)? Elsewhere bf16 autocast is emulated through
    fp32 conversions: slower than fp32 and less accurate. capabilities: torch.cpu.get_capabilities()."""
    caps = torch.cpu.get_capabilities() if capabilities is None else capabilities
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def autocast_dtype(amp: str, device_type: str, capabilities: dict | None = None) -> torch.dtype | None:
    """bf16 when asked (--amp bf16), or with --amp auto on CUDA and on CPUs with native bf16; else None."""
    if amp == "bf16" or (amp == "auto" and (device_type == "cuda" or cpu_has_fast_bf16(capabilities))):
        return torch.bfloat16
    return None


def setup_distributed(device_arg: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), world_size, local_rank


def pick_device(arg: str, local_rank: int) -> torch.device:
    if arg == "cuda" or (arg == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            sys.exit("--device cuda was asked for, but no CUDA device is available; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def library_versions() -> dict:
    import torchvision
    # str(): torch.__version__ is a TorchVersion object, which weights_only loading (rightly) refuses.
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "platform": platform.platform()}


# ----------------------------------------------------------------------------------------------------
# One epoch of training, and evaluation


def train_one_epoch(model, loader, optimizer, scheduler, spec: InputSpec, aug_cfg, amp_dtype, gen,
                    label_smoothing: float, memory_format, progress, dry_run: bool = False) -> dict:
    model.train()
    device = loader.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, t0 = 0, time.perf_counter()
    for step, (xb, yb, *lines) in enumerate(loader):  # lines: the batch's centre lines, for the pen preset
        x = augment(xb.float() / 255.0, aug_cfg, gen, *lines)
        x = ((x - spec.mean) / spec.std).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_dtype is not None):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        # Accumulate on the device; reading .item() every step would stall a GPU.
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
        if progress is not None and (step % 20 == 0 or step == len(loader) - 1):
            progress.set_postfix(loss=f"{loss.item():.3f}", acc=f"{100 * correct.item() / seen:.2f}%",
                                 img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if progress is not None:
            progress.update(1)
        if dry_run:
            break
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def predict_logits(model, images_u8: torch.Tensor, spec: InputSpec, batch_size: int = 1000,
                   amp_dtype=None, memory_format=torch.contiguous_format) -> torch.Tensor:
    """Logits (float32) for uint8 images (N, 1, 28, 28) already on the model's device."""
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = to_input(images_u8[i:i + batch_size], spec.mean, spec.std).contiguous(memory_format=memory_format)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp_dtype is not None):
            out.append(model(x).float())
    return torch.cat(out) if out else torch.empty(0, len(spec.class_names))


def evaluate_split(model, images_u8, labels, spec: InputSpec, rank: int = 0, world_size: int = 1,
                   **kw) -> tuple[dict, float]:
    """Metrics on a whole split; under DDP each rank scores every world_size-th image and the confusion
    matrix and loss are summed across ranks, so every rank returns the metrics of the whole split."""
    images_u8, labels = images_u8[rank::world_size], labels[rank::world_size]
    logits = predict_logits(model, images_u8, spec, **kw)
    loss_sum = F.cross_entropy(logits, labels.to(logits.device), reduction="sum")
    cm = confusion_matrix(logits.argmax(1), labels, len(spec.class_names))
    if world_size > 1:
        sums = torch.cat([cm.flatten().double().to(logits.device), loss_sum.double().view(1)])
        dist.all_reduce(sums)
        cm, loss_sum = sums[:-1].round().long().cpu().view_as(cm), sums[-1]
    n = int(cm.sum())
    return summarize(cm, spec.class_names), loss_sum.item() / n if n else float("nan")


# ----------------------------------------------------------------------------------------------------
# DistributedDataParallel helpers (no-ops in a single process)


def average_buffers(model, world_size: int) -> None:
    """Average BatchNorm running statistics over the ranks.

    DDP keeps the parameters identical, but each rank's running mean/var also absorb its own last
    batches (DDP re-broadcasts rank 0's buffers only at the next forward). Averaging at the end of an
    epoch gives the saved model statistics from every shard and every replica the same state.
    """
    if world_size > 1:
        for b in model.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(world_size)


def state_sha256(state_dict: dict) -> str:
    """Fingerprint of a state_dict's names, dtypes, shapes and exact bytes (layout-independent)."""
    h = hashlib.sha256()
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_replicas_agree(model, world_size: int, epoch: int) -> str:
    """sha256 of this rank's weights and buffers; raises on every rank if any replica differs."""
    digest = state_sha256(model.state_dict())
    if world_size > 1:
        digests = [None] * world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"DDP replicas diverged after epoch {epoch}: state sha256 per rank "
                f"{[d[:12] for d in digests]}. Every rank must run the same forward and backward (no "
                f"rank-dependent layers or skipped steps); nothing was saved for this epoch.")
    return digest


def gather_rng_states(world_size: int) -> list[torch.Tensor]:
    """Every rank's CPU RNG state (dropout differs per rank), so --resume replays each rank exactly."""
    if world_size == 1:
        return [torch.get_rng_state()]
    states = [None] * world_size
    dist.all_gather_object(states, torch.get_rng_state())
    return states


# ----------------------------------------------------------------------------------------------------
# Main


def main(argv=None) -> dict:
    args = get_args(argv)
    resume_ckpt = None
    if args.resume:
        resume_ckpt = load_checkpoint(args.resume)
        # The interrupted run's config wins; of the flags that do not change the result (where to write,
        # what to show, where the data is, how many threads), those given explicitly now override it.
        defaults = vars(get_args([]))
        overridable = ("out", "no_progress", "device", "data_dir", "threads")
        given = {k: getattr(args, k) for k in overridable if getattr(args, k) != defaults[k]}
        args = argparse.Namespace(**{**defaults, **resume_ckpt["config"], **given, "resume": args.resume,
                                     "stop_after_epoch": args.stop_after_epoch})
        if "out" not in given:
            args.out = args.resume
    if args.dataset.startswith("folder:"):  # stored in the checkpoint: make it work from any directory
        args.dataset = "folder:" + str(Path(args.dataset.removeprefix("folder:")).expanduser().resolve())
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world_size, local_rank = setup_distributed(args.device)
    master = rank == 0
    device = pick_device(args.device, local_rank)
    amp_dtype = autocast_dtype(args.amp, device.type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed + rank)

    # ---- data (resident on the device)
    train = load_dataset(args.dataset, args.data_dir, train=True, download=not args.no_download)
    test = load_dataset(args.dataset, args.data_dir, train=False, download=not args.no_download)
    if args.max_train_images:
        train.images, train.labels = train.images[:args.max_train_images], train.labels[:args.max_train_images]
    if args.max_test_images:
        test.images, test.labels = test.images[:args.max_test_images], test.labels[:args.max_test_images]
    if args.dataset == "mnist":
        mean, std = 0.1307, 0.3081  # the customary MNIST statistics
    else:
        f = train.images.float() / 255.0
        mean, std = round(f.mean().item(), 4), round(f.std().item(), 4)
    spec = InputSpec(mean=mean, std=std, class_names=train.class_names,
                     layout="object" if args.dataset == "fashion" else "digit")
    # Fashion photos get flips and cutout; digits and image folders (glyph-like drawings) the handwriting preset.
    aug_name = args.augment if args.augment != "auto" else ("fashion" if args.dataset == "fashion" else "digits")
    aug_cfg = AUGMENT_PRESETS[aug_name]
    train_x, train_y = train.images.to(device), train.labels.to(device)
    test_x, test_y = test.images.to(device), test.labels.to(device)
    local_bs = max(1, args.batch_size // world_size)
    lines = None
    if aug_cfg.pen:
        t0 = time.perf_counter()
        lines = centre_lines(train_x)
        if master:
            print(f"centre lines of {len(train_x)} training digits for the pen: {time.perf_counter() - t0:.0f}s")
    loader = TensorLoader(train_x, train_y, local_bs, shuffle=True, seed=args.seed, rank=rank,
                          world_size=world_size, drop_last=world_size > 1, lines=lines)
    if len(loader) == 0:
        sys.exit(f"{len(train)} training images are too few for a batch of {local_bs} on each of "
                 f"{world_size} ranks; lower --batch-size (it is the global batch) or use fewer processes")

    # ---- model and optimiser
    init_ckpt = load_checkpoint(args.init) if args.init and resume_ckpt is None else None
    if init_ckpt is not None:  # fine-tuning: the model its checkpoint records, recorded again in this config
        if init_ckpt["input_spec"]["class_names"] != spec.class_names:
            sys.exit(f"--init {args.init} was trained for the classes {init_ckpt['input_spec']['class_names']}, "
                     f"and {args.dataset} has {spec.class_names}; start from a checkpoint of the same dataset")
        args.model, model_args = init_ckpt["model_name"], init_ckpt["model_args"]
        args.width = model_args.get("width", args.width)
    else:
        model_args = resolve_model_args(args.model, num_classes=len(spec.class_names),
                                        **({} if args.width is None else {"width": args.width}))
    model = create_model(args.model, **model_args)
    init = resume_ckpt.get("init") if resume_ckpt is not None else None  # what a fine-tuning run started from
    if init_ckpt is not None:
        model.load_state_dict(init_ckpt["model"])
        init = {"path": args.init, "state_sha256": state_sha256(init_ckpt["model"]),
                "test_accuracy": init_ckpt["metrics"]["test_accuracy"], "history": lineage(init_ckpt)}
    model = model.to(device)
    memory_format = torch.channels_last if any(p.dim() == 4 for p in model.parameters()) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    flops = count_flops(model)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # no weight decay on BN and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                    steps_per_epoch=len(loader), pct_start=0.2)
    gen = torch.Generator()  # augmentation randomness, reseeded per (seed, rank, epoch) so resume replays it
    start_epoch, history, total_train_s = 0, [], 0.0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["model"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        if scheduler.total_steps != args.epochs * len(loader):
            # The per-rank batch and shard, hence the steps per epoch, depend on the number of processes.
            sys.exit(f"{args.resume} was trained with {resume_ckpt.get('world_size', 1)} process(es) and a "
                     f"schedule of {scheduler.total_steps} steps; this launch has {world_size} process(es) "
                     f"and would take {args.epochs * len(loader)}. Resume with the same number of processes "
                     f"(torchrun --nnodes x --nproc_per_node).")
        per_rank = resume_ckpt["rng"].get("per_rank")
        torch.set_rng_state(per_rank[rank] if per_rank and len(per_rank) == world_size
                            else resume_ckpt["rng"]["torch"])
        start_epoch, history = resume_ckpt["epoch"], resume_ckpt["history"]
        total_train_s = resume_ckpt["metrics"].get("train_seconds", 0.0)
    ddp_model = model
    if world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)

    if master:
        print(f"config: {json.dumps(vars(args))}")
        print(f"model {args.model} {model_args}: {sum(p.numel() for p in model.parameters()):,} parameters, "
              f"{flops / 1e6:.1f} MFLOP per image; device {device}, "
              f"amp {'bf16' if amp_dtype else 'off'}, world size {world_size}, threads {torch.get_num_threads()}; "
              f"{len(train)} train / {len(test)} test images; augment {aug_name}")
        if start_epoch:
            print(f"resuming from {args.resume} after epoch {start_epoch}")
        elif init_ckpt is not None:
            print(f"starting from the weights of {args.init} (test accuracy "
                  f"{init_ckpt['metrics']['test_accuracy']:.2f}%)")
        if start_epoch >= args.epochs:
            print(f"nothing to do: the run already finished its {args.epochs} epochs")

    summary, test_loss = None, float("nan")
    for epoch in range(start_epoch, args.epochs):
        loader.set_epoch(epoch)
        gen.manual_seed(args.seed * 1_000_003 + rank * 7919 + epoch)
        progress = None
        if master and not args.no_progress:
            progress = tqdm(total=1 if args.dry_run else len(loader), desc=f"epoch {epoch + 1}/{args.epochs}",
                            unit="batch", dynamic_ncols=True, file=sys.stdout)
        stats = train_one_epoch(ddp_model, loader, optimizer, scheduler, spec, aug_cfg, amp_dtype, gen,
                                args.label_smoothing, memory_format, progress, dry_run=args.dry_run)
        if progress is not None:
            progress.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        total_train_s += stats["seconds"]
        sums = torch.stack([stats["loss_sum"].float(), stats["correct"].float(),
                            torch.tensor(float(stats["seen"]), device=device)])
        if world_size > 1:
            dist.all_reduce(sums)  # every rank's share of the epoch counts
        train_loss, train_acc = (sums[0] / sums[2]).item(), (100 * sums[1] / sums[2]).item()

        average_buffers(model, world_size)
        digest = check_replicas_agree(model, world_size, epoch + 1)
        n_eval = 1000 if args.dry_run else len(test_y)
        summary, test_loss = evaluate_split(model, test_x[:n_eval], test_y[:n_eval], spec, rank, world_size,
                                            amp_dtype=amp_dtype, memory_format=memory_format)
        rng_states = gather_rng_states(world_size)
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 3),
                        "test_loss": round(test_loss, 5), "test_acc": summary["accuracy"],
                        "epoch_seconds": round(stats["seconds"], 2)})
        if master:
            print(f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.2f}% | test loss "
                  f"{test_loss:.4f} acc {summary['accuracy']:.2f}% | {stats['seconds']:.1f}s "
                  f"({sums[2].item() / stats['seconds']:.0f} img/s)", flush=True)
            save_checkpoint(args.out, {
                "model_name": args.model,
                "model_args": model_args,
                "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                "input_spec": spec.to_dict(),
                "config": vars(args),
                "metrics": {"test_accuracy": summary["accuracy"], "test_loss": round(test_loss, 5),
                            "train_seconds": round(total_train_s, 2), "mflops": round(flops / 1e6, 3)},
                "history": history,
                "versions": library_versions(),
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {"torch": rng_states[0], "per_rank": rng_states},
                "world_size": world_size,
                "init": init,
            })
        if args.dry_run or epoch + 1 == args.stop_after_epoch:
            break
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if master and summary is not None:
        print(f"saved {args.out}: test accuracy {summary['accuracy']:.2f}%, training time {total_train_s:.1f}s")
        if world_size > 1:
            print(f"all {world_size} ranks hold identical weights and buffers: state sha256 {digest}")
    return {"accuracy": summary["accuracy"] if summary else None, "test_loss": test_loss, "out": args.out}


if __name__ == "__main__":
    main()
