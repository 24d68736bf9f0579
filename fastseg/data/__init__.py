"""Data sets on disk and what is computed from them: VOC (and SBD) reading and downloading, the
seed's split, the up-front data check, class weights, and the generated demo set. No fastai."""
