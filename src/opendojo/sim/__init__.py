"""opendojo.sim"""
