"""The process launcher outside Triton: a tritonserver to run, its process, its supervision, `vhs-serve`.

    install.py      a runnable tritonserver: the NGC container's, or the nvidia-pytriton wheel's copied out
    server.py       TritonServer: one tritonserver process on a model repository (start, ready, stop)
    stub_census.py  the Python-backend stubs of a running server, per model (/proc)
    supervisor.py   reloads a model that lost a stub, restarts a server that exited
    cli.py          the `vhs-serve` command line

Each module imports only those above it; nothing here runs inside Triton.
"""
