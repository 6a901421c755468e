"""medseg_dfl.io"""
