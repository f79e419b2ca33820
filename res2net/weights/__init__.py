"""Weight files: PaddleClas .pdparams, timm / original-release .pth and .safetensors."""
