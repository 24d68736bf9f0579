"""`fastseg serve`: a trained model behind an HTTP API and a web page (FastAPI, the `serve` extra).

`app.create_app` builds the application; `engine.Engine` runs requests through the inference code
`predict` uses (`fastseg.inference`), gathered into batches by `batching.Batcher`."""
