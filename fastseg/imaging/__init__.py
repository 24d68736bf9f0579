"""Pictures in and out, shared by training and inference: decoding any image, class-index masks,
colours, and fitting an image into the model's square input."""
