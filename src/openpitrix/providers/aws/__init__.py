"""The aws provider: EC2 instances as VM cluster nodes, through aioboto3 and the address guard."""
