//! NestOS configuration: nestos-config trees (treefiles, image.yaml, .repo files) loaded and resolved.
