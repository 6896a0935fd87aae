"""Demo relying parties ("partner sites") and the scripts that set them up (`make demo`)."""
