"""minislm cost: will a model fit a device, and how fast will it decode?

    minislm cost --model weights/gpt2 --device siracusa --weight-bits 4 --sparsity 0.5
    minislm cost --config llama.config.json --device jetson-nano --context 512 --json
    minislm cost --device siracusa --show-device          # every device number and its source
"""
import json
from pathlib import Path

NAME = "cost"
HELP = "predict memory fit, latency and tokens/s of a model on Siracusa or a Jetson Nano"


def add_arguments(p):
    """Declare `minislm cost`'s options on the subparser p."""
    from minislm.hardware.devices import DEVICES
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="HF checkpoint folder (config.json + *.safetensors); bits "
                     "from its quantization_config, sparsity measured from its weights")
    src.add_argument("--config", help="a config.json (shapes only)")
    p.add_argument("--device", required=True, choices=list(DEVICES),
                   help="device description (see minislm/hardware/devices/)")
    p.add_argument("--context", type=int, default=None,
                   help="tokens in the KV cache for the decode step, and prompt length for "
                        "the prefill (default 256, or the model's max positions - 1)")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="2..8 integer codes or 16/32 float (default: from --model, else 32)")
    p.add_argument("--embedding-bits", type=int, default=None,
                   help="bits of the embedding tables and LM head (default: as stored "
                        "for --model without --weight-bits, else the weight bits)")
    p.add_argument("--group-size", type=int, default=None,
                   help="quantization group size (default: from --model, else 128)")
    p.add_argument("--sparsity", type=float, default=None,
                   help="fraction of zeros in the block linear weights (default: measured "
                        "from --model, else 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ops", action="store_true", help="per-kernel rows instead of per-layer")
    p.add_argument("--show-device", action="store_true",
                   help="print the device's facts with their sources and exit")


def run(args) -> int:
    """Estimate a model's memory fit, latency and tokens/s on a device and print it (or JSON);
    0 on success."""
    from minislm.config import Config
    from minislm.errors import InputError
    from minislm.hardware import estimate, format_report, get_device
    from minislm.hardware.folder import read_model_folder

    device = get_device(args.device)
    if getattr(args, "show_device", False):
        print(device.table())
        return 0
    notes = []
    bits, group_size, sym, sparsity, embedding_bits, eora_rank = 32, 128, False, 0.0, None, 0
    if getattr(args, "model", None):
        info = read_model_folder(args.model,
                                 measure_sparsity=getattr(args, "sparsity", None) is None)
        config, bits, group_size, sym = (info["config"], info["weight_bits"],
                                         info["group_size"], info["sym"])
        sparsity, notes = info["sparsity"], info["notes"]
        embedding_bits, eora_rank = info["embedding_bits"], info["eora_rank"]
    elif getattr(args, "config", None):
        path = Path(args.config)
        config = Config.from_file(path / "config.json" if path.is_dir() else path)
    else:
        raise InputError("minislm cost needs --model PATH or --config CONFIG.json")
    if getattr(args, "weight_bits", None) is not None:
        bits = args.weight_bits
        embedding_bits = None                   # a what-if: the embeddings follow the weights
    if getattr(args, "group_size", None) is not None:
        group_size = args.group_size
    if getattr(args, "sparsity", None) is not None:
        sparsity = args.sparsity
    if getattr(args, "embedding_bits", None) is not None:
        embedding_bits = args.embedding_bits
    result = estimate(config, device, context=getattr(args, "context", None), weight_bits=bits,
                      sparsity=sparsity, group_size=group_size, sym=sym,
                      embedding_bits=embedding_bits, eora_rank=eora_rank, assumptions=True)
    result["notes"] = notes
    if getattr(args, "json", False):
        print(json.dumps(result, allow_nan=False))
    else:
        print(format_report(result, show_ops=getattr(args, "ops", False)))
        for note in notes:
            print(f"note: {note}")
    return 0
