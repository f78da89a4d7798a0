"""What the worker refuses by default: credentials, outbound URLs and pods that its operator did not allow."""
