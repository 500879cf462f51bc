"""Label quality for Quorum: gold questions, worker accuracy, aggregation, dynamic overlap."""
