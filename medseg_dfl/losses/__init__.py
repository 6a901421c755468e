"""medseg_dfl.losses"""
