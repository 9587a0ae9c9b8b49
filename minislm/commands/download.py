"""minislm download: fetch a safetensors checkpoint (or one GGUF file) from the Hugging Face Hub."""
NAME = "download"
HELP = "download REPO_ID (safetensors only, revision pinned) into weights/, or one GGUF file " \
       "of it with --file NAME.gguf"


def add_arguments(p):
    """Declare `minislm download`'s options on the subparser p."""
    p.add_argument("repo_id")
    p.add_argument("--revision", default=None, help="branch, tag or commit (resolved and pinned)")
    p.add_argument("--out-dir", default="weights")
    p.add_argument("--file", default=None, metavar="NAME.gguf",
                   help="fetch only this GGUF file of the repository")


def run(args) -> int:
    """Download REPO_ID's safetensors checkpoint (or one GGUF file with --file); 0 on success."""
    if args.file is not None:
        from minislm.gguf.download import download_gguf
        path = download_gguf(args.repo_id, args.file, revision=args.revision,
                             out_dir=args.out_dir)
    else:
        from minislm.loading import download
        path = download(args.repo_id, revision=args.revision, out_dir=args.out_dir)
    print(path)
    return 0
