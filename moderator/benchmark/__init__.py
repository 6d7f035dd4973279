"""Every benchmark of the project, in one place.

`moderator bench` (run.py, with raw_loop.py, pipeline.py and ingest.py): throughput, latency
and cache figures as ratios measured in one run. The others run as
`python -m moderator.benchmark.<name>` (`--help` lists each one's options):

- codec_bench: Kafka compression of the decisions, cost and size per codec;
- decode_bench: what reading a post costs beyond parsing it;
- gpu_check (scripts/gpu-check.sh), gpu_curve: the GPU check and its batch-size curve;
- model_bench: inference precisions against fp32, speed and AUROC;
- ocr_bench, ocr_eval (with ocr_measure): OCR speed, and how well it reads;
- policy_bench: the policy engine against cel-python, and PDQ bank lookups;
- safety_bench: the image-safety classifier's speed;
- signal_bench: the worker's pool signals, cold and reposted.

The library does not import the app: what must run the worker's own code (the no-op ingest
workers, the signal stage) runs in a child process started by module path, from
workers/benchmarks.py.
"""
