"""From neighbours to an answer: voting, re-ranking (AQE, DBA), confidence and penalties, spatial verification, and every reference's nearest neighbours."""
