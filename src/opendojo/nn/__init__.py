"""opendojo.nn"""
