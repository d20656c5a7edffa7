"""Attribution: in-silico mutagenesis, gradients, integrated gradients, DeepLIFT-SHAP and
variant effects."""
