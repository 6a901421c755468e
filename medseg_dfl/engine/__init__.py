"""medseg_dfl.engine"""
