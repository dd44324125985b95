"""opendojo.models"""
