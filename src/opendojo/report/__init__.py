"""opendojo.report"""
