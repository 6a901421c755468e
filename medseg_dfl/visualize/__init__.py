"""medseg_dfl.visualize"""
