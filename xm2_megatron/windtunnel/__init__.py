"""The wind tunnel: experiments on small models whose results carry to the large recipe
(µP coordinate checks; µTransfer sweeps and searches build on the Trainer)."""
