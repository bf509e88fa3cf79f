"""Export: checkpoints and third-party weights -> crres model bundles (torch lives here, never in the SDK)."""
