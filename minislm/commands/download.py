"""minislm download: fetch a safetensors checkpoint from the Hugging Face Hub."""
NAME = "download"
HELP = "download REPO_ID (safetensors only, revision pinned) into weights/"


def add_arguments(p):
    p.add_argument("repo_id")
    p.add_argument("--revision", default=None, help="branch, tag or commit (resolved and pinned)")
    p.add_argument("--out-dir", default="weights")


def run(args) -> int:
    from minislm.loading import download
    path = download(args.repo_id, revision=args.revision, out_dir=args.out_dir)
    print(path)
    return 0
