"""Attribution: in-silico mutagenesis, gradients and variant effects."""
