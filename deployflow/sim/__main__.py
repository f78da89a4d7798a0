"""`python -m deployflow.sim`: a simulated cluster in the foreground, for the demo and for kubectl by hand."""

from __future__ import annotations

import argparse
import logging

from deployflow.sim.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deployflow.sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the simulator here (context 'sim')")
    parser.add_argument("--context", default="sim")
    parser.add_argument("--time-factor", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"simulator listening on http://{args.host}:{args.port}", flush=True)
    if args.kubeconfig:
        print(f"kubeconfig: {args.kubeconfig} (context {args.context})", flush=True)
    run(args.host, args.port, args.kubeconfig, args.time_factor, args.context, args.seed)


if __name__ == "__main__":
    main()
