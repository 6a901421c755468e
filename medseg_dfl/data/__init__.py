"""medseg_dfl.data"""
