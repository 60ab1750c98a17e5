"""Paper experiments: each module reproduces one paper's tables at laptop scale in a resumable run directory."""
