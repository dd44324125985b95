"""opendojo.data"""
