"""`zoo serve`: finished runs behind TF Serving's REST API and a web page.

The parts, one concern each: `validation.py` (limits and request checks),
`batching.py` (the dynamic batcher), `models.py` (what each model takes and
answers), `textgen.py` (GPT-2's batched, streamed decoding), `app.py` (the
FastAPI routes), `page.html` (the page at `/`) and `server.py` (the
command). Needs the `serve` extra: `pip install -e ".[serve]"`.

```
zoo serve runs/mlp_regressor/20260101-120000 runs/gpt2_textgen/20260101-130000
curl -s localhost:8501/v1/models/mlp_regressor-20260101-120000:predict \\
    -d '{"instances": [[0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.4, 0.8, 0.6, 0.5]]}'
```

Importing this package imports neither TensorFlow nor FastAPI.
"""
