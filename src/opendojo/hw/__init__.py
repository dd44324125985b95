"""opendojo.hw"""
