"""Privacy-safe learning on the site side: self-calibration and the federated round's release.

``pairs`` picks the template pairs with each person's share bounded; ``histogram`` holds the fixed bins,
the tables read from them and the DP noise; ``calibrate`` is ``facekeeper calibrate`` (measure, adopt,
revert); ``join`` is ``facekeeper federate join``: the noisy release, its budget and its audit, handed to
a Flower SuperNode that never sees a template.
"""
