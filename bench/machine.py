"""What the benchmarks print about the machine they ran on."""


def cpu() -> str:
    """The CPU model and the vector extensions that matter to lca's kernels."""
    with open("/proc/cpuinfo") as f:
        info = f.read()
    lines = info.splitlines()
    model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile"]
    return f"{model} ({', '.join(f for f in wanted if f in flags)})"
